#!/usr/bin/env bash
# One GPU session, prepared to run once: the Fashion-MNIST medium study with `device: cuda`, its
# audit and headline, then the throughput bench. Everything it prints goes under OUT.
#
#   OUT=out bash bench/gpu_session.sh WHEELS DATA_ROOT STUDY_SECONDS BENCH_SECONDS
#
# WHEELS: a folder of wheels for what the machine lacks (Snakemake, jsonschema), installed with
# --no-index into a private site folder; DATA_ROOT: the Fashion-MNIST IDX files. A stage that
# runs past its seconds is stopped, and what it finished is still reported.
set -uo pipefail
WHEELS=$1 DATA_ROOT=$2 STUDY_SECONDS=$3 BENCH_SECONDS=$4
OUT=${OUT:?set OUT to the folder that receives the logs}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -n "$(ls "$WHEELS" 2>/dev/null)" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PATH=/tmp/site/bin:$PATH
fi
export PYTHONPATH=$PWD:/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/run.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" \
  | tee -a "$OUT/run.txt"

# What changes on one GPU (16 host cores): the device, and more, thinner jobs, so that the
# analyses' host-side work (scikit-learn readouts and fits) spreads over the host's cores while
# the GPU work of all jobs shares the one device. The science settings are the study's own.
cat >/tmp/on_one_gpu.yaml <<'YAML'
device: cuda
cluster: {gpu_threads: 1}
activations: {jobs: 8}
analyses: {clones: {jobs: 16}, units: {jobs: 8}, transfer: {jobs: 8}}
YAML
results=results/fashion_mnist_medium
start=$(date +%s)
timeout "$STUDY_SECONDS" python3 -m snakemake --workflow-profile profiles/local --cores 16 \
  --resources gpu=16 --configfile configs/fashion_mnist_medium.yaml /tmp/on_one_gpu.yaml \
  --config data_root="$DATA_ROOT" >"$OUT/study.log" 2>&1
echo "study: exit $?, $(($(date +%s) - start)) s wall" | tee -a "$OUT/run.txt"
grep -o "[0-9]* of [0-9]* steps ([0-9.]*%) done" "$OUT/study.log" | tail -1 >>"$OUT/run.txt"
python3 bench/rule_times.py "$results" >"$OUT/rule_times.md" 2>&1
python3 -m widthlab.cli audit "$results" 2>&1 | tail -5 >>"$OUT/run.txt"
python3 -m widthlab.cli summary "$results" >"$OUT/summary.md" 2>&1
tar czf "$OUT/summary.tar.gz" "$results/summary" "$results/benchmarks" 2>/dev/null

timeout "$BENCH_SECONDS" python3 bench/gpu.py --only convnets mlps epoch >"$OUT/bench.md" 2>&1
echo "bench: exit $?" >>"$OUT/bench.md"
tail -c 3000 "$OUT/study.log"
cat "$OUT/run.txt" "$OUT/rule_times.md" "$OUT/bench.md"
