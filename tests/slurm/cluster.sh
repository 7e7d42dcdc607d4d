#!/usr/bin/env bash
# A real single-node SLURM cluster for the widthlab tests (Debian, root, no systemd needed).
#
#   tests/slurm/cluster.sh start    install what is missing, write config, start the daemons
#   tests/slurm/cluster.sh stop     cancel jobs, stop the daemons this script started (by PID)
#   tests/slurm/cluster.sh status   show the daemons and `sinfo`; exit 0 only when all run
#   tests/slurm/cluster.sh env      print the `export SLURM_CONF=...` line for clients
#
# Everything lives under $WIDTHLAB_SLURM_DIR (default /tmp/widthlab-slurm): slurm.conf,
# slurmdbd.conf, gres.conf, cgroup.conf, a private munge key + socket, a private MariaDB data
# directory, spool, logs, PID files. Apart from the /etc/slurm/slurm.conf link (below) nothing
# is written outside it and no system service is touched: MariaDB listens on 127.0.0.1 only,
# and the SLURM daemons (which bind all interfaces: SLURM has no bind-address setting) are
# addressed over 127.0.0.1 only.
#
# Clients (sbatch, squeue, sacct, snakemake's slurm executor plugin) find the cluster through
# SLURM_CONF. `start` prints `export SLURM_CONF=...` as its last stdout line and writes the
# same line to $WIDTHLAB_SLURM_DIR/env.sh:  eval "$(tests/slurm/cluster.sh start)".
# `start` also symlinks /etc/slurm/slurm.conf to the generated file (and `stop` removes the
# link): inside each job, snakemake-executor-plugin-slurm-jobstep (0.6) strips every SLURM_*
# variable, SLURM_CONF included, before it calls `srun`, and srun without SLURM_CONF reads
# /etc/slurm/slurm.conf (else it fails with "DNS SRV lookup failed ... Could not establish a
# configuration source"). So the compiled-in path must point at this cluster. An existing
# /etc/slurm/slurm.conf that is not our link (a machine with a real SLURM) is never touched:
# `start` stops with an error instead.
#
# Cluster shape: one node named after this host (line copied from `slurmd -C`), partition
# `debug` (default), select/cons_tres with CR_Core_Memory and DefMemPerCPU, one fake GPU
# (gres gpu:fake:1 backed by a dummy file) so `--gpus=1` / `--gpus=fake:1` requests schedule,
# accounting through slurmdbd + MariaDB (so `sacct` works: the snakemake plugin uses it for
# status checks whenever it is installed), MinJobAge=600.
#
# Environment: WIDTHLAB_SLURM_DIR, WIDTHLAB_SLURM_PORT (slurmctld; slurmd = +1, slurmdbd = +2;
# default 6817), WIDTHLAB_SLURM_DB_PORT (MariaDB, default 33306).
set -euo pipefail

DIR="${WIDTHLAB_SLURM_DIR:-/tmp/widthlab-slurm}"
CTLD_PORT="${WIDTHLAB_SLURM_PORT:-6817}"
SLURMD_PORT=$((CTLD_PORT + 1))
DBD_PORT=$((CTLD_PORT + 2))
DB_PORT="${WIDTHLAB_SLURM_DB_PORT:-33306}"
CLUSTER=widthlab
PARTITION=debug
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd) # start order; stop is the reverse

ETC="$DIR/etc"
CONF="$ETC/slurm.conf"
PIDS="$DIR/pids"
LOGS="$DIR/log"
T0=${EPOCHREALTIME/[.,]/}

log() {
	local ms=$(((${EPOCHREALTIME/[.,]/} - T0) / 1000))
	printf '[cluster.sh %3d.%01ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*" >&2
}
die() {
	printf 'cluster.sh: error: %s\n' "$*" >&2
	exit 1
}

# --- checks -------------------------------------------------------------------------------

check_platform() {
	[[ $(id -u) -eq 0 ]] || die "must run as root (it installs Debian packages and starts \
munged/mariadbd/slurmdbd/slurmctld/slurmd); you are $(id -un)"
	# shellcheck source=/dev/null
	[[ -r /etc/os-release ]] && . /etc/os-release
	[[ ${ID:-} == debian || ${ID_LIKE:-} == *debian* ]] ||
		die "needs Debian (apt packages ${PACKAGES[*]}); this is ${PRETTY_NAME:-an unknown OS}"
}

install_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		return 0
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Package scripts must not start system services: we run our own instances.
	local policy=/usr/sbin/policy-rc.d made_policy=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
	fi
	local candidates=1
	for p in "${missing[@]}"; do
		apt-cache show "$p" >/dev/null 2>&1 || candidates=0
	done
	if ((candidates == 0)); then
		log "apt-get update (package lists lack ${missing[*]})"
		apt-get update -q >"$DIR/apt.log" 2>&1 || {
			((made_policy)) && rm -f "$policy"
			die "apt-get update failed, see $DIR/apt.log"
		}
	fi
	if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$DIR/apt.log" 2>&1; then
		((made_policy)) && rm -f "$policy"
		die "apt-get install ${missing[*]} failed, see $DIR/apt.log"
	fi
	((made_policy)) && rm -f "$policy"
	log "installed"
}

# --- PIDs ---------------------------------------------------------------------------------

pid_of() { # name -> recorded pid (empty if none)
	[[ -f $PIDS ]] || return 0
	awk -v n="$1" '$1 == n { p = $2 } END { if (p) print p }' "$PIDS"
}

running() { # pid -> true when it exists and is not a zombie
	[[ -n $1 && -r /proc/$1/stat ]] || return 1
	local stat
	stat=$(</proc/"$1"/stat) 2>/dev/null || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

alive() { # name -> true when its recorded PID runs that program
	local pid argv0
	pid=$(pid_of "$1")
	running "$pid" || return 1
	argv0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1)
	[[ $(basename "$argv0") == "$1" ]]
}

record() { # name pid
	[[ -f $PIDS ]] && sed -i "/^$1 /d" "$PIDS"
	echo "$1 $2" >>"$PIDS"
}

# spawn name logfile cmd... : start a foreground daemon in its own session, record its PID
spawn() {
	local name=$1 logfile=$2
	shift 2
	# `setsid` execs in place (this shell is not a process-group leader), so $! is the daemon.
	setsid "$@" </dev/null >>"$logfile" 2>&1 &
	record "$name" $!
}

wait_for() { # seconds command... : retry the command (each try at most 10 s) until it succeeds
	local end=$((SECONDS + $1))
	shift
	while ((SECONDS < end)); do
		if timeout 10 "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	return 1
}

# --- config -------------------------------------------------------------------------------

write_config() { # [dir]: write slurm.conf, gres.conf, cgroup.conf, slurmdbd.conf there
	local etc=${1:-$ETC} host node_line mem cpus defmem
	host=$(hostname -s)
	node_line=$(slurmd -C | head -n1)
	[[ $node_line == NodeName=* ]] || die "unexpected \`slurmd -C\` output: $node_line"
	node_line=${node_line/NodeName=$host /NodeName=$host NodeAddr=127.0.0.1 }
	mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
	cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")
	defmem=$((mem / cpus))
	((defmem > 1024)) && defmem=1024

	mkdir -p "$etc" "$DIR/spool/ctld" "$DIR/spool/d" "$DIR/run" "$LOGS" "$DIR/gpu"
	: >"$DIR/gpu/fake-gpu0" # the "device" of the fake GPU: slurmd only checks it exists

	cat >"$etc/slurm.conf" <<EOF
# written by tests/slurm/cluster.sh - a single-node test cluster
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# no cgroups needed (containers, no systemd)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without DefMemPerCPU a job that asks for no memory takes the whole node
DefMemPerCPU=$defmem
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# for slurmdbd connections the munge socket is given here, not by AuthInfo
AccountingStoragePass=$DIR/munge/munge.socket
AccountingStorageTRES=gres/gpu
# keep sbatch --comment (the plugin writes rule_<rule>_wildcards_<...> there) in sacct
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
MailProg=/bin/true
# finished jobs stay visible to squeue/scontrol for 10 minutes
MinJobAge=600
# SIGTERM -> SIGKILL grace when a job is cancelled, preempted or hits its time limit
KillWait=10
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
$node_line Gres=gpu:fake:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

	cat >"$etc/gres.conf" <<EOF
AutoDetect=off
NodeName=$host Name=gpu Type=fake File=$DIR/gpu/fake-gpu0
EOF

	# Read only if a cgroup plugin is used; kept so that switching to proctrack/cgroup needs
	# no new file.
	cat >"$etc/cgroup.conf" <<EOF
CgroupPlugin=autodetect
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF

	cat >"$etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
DbdHost=$host
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$LOGS/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=widthlab
StorageLoc=${CLUSTER}_acct_db
EOF
	chmod 600 "$etc/slurmdbd.conf"

	echo "export SLURM_CONF=$CONF" >"$DIR/env.sh"
}

# --- daemons ------------------------------------------------------------------------------

start_munged() {
	alive munged && return 0
	local m="$DIR/munge"
	mkdir -p "$m"
	chown munge:munge "$m" && chmod 755 "$m" # munged: socket dir must be o+x
	if [[ ! -s $m/munge.key ]]; then
		mungekey --create --keyfile="$m/munge.key" --bits=1024 # as root, then hand over
		chown munge:munge "$m/munge.key" && chmod 600 "$m/munge.key"
	fi
	rm -f "$m/munge.socket" "$m/munge.socket.lock"
	# munged refuses to run as root; setpriv execs in place, so the recorded PID is munged's.
	spawn munged "$LOGS/munged.out" setpriv --reuid=munge --regid=munge --init-groups \
		munged --foreground --socket="$m/munge.socket" --key-file="$m/munge.key" \
		--pid-file="$m/munged.pid" --log-file="$m/munged.log" --seed-file="$m/munged.seed"
	wait_for 15 bash -c "munge -n -S '$m/munge.socket' | unmunge -S '$m/munge.socket'" ||
		die "munged did not come up; see $m/munged.log and $LOGS/munged.out"
	log "munged up (pid $(pid_of munged))"
}

start_mariadb() {
	alive mariadbd && return 0
	local d="$DIR/mysql"
	mkdir -p "$d"
	chown mysql:mysql "$d"
	if [[ ! -d $d/data/mysql ]]; then
		mariadb-install-db --no-defaults --user=mysql --datadir="$d/data" \
			--auth-root-authentication-method=socket --skip-test-db >"$LOGS/mariadb-install.log" 2>&1 ||
			die "mariadb-install-db failed; see $LOGS/mariadb-install.log"
	fi
	chown -R mysql:mysql "$d"
	spawn mariadbd "$LOGS/mariadbd.out" mariadbd --no-defaults --user=mysql --datadir="$d/data" \
		--socket="$d/mysqld.sock" --pid-file="$d/mysqld.pid" --log-error="$LOGS/mariadbd.log" \
		--bind-address=127.0.0.1 --port="$DB_PORT" --innodb-buffer-pool-size=128M \
		--innodb-lock-wait-timeout=900 --skip-log-bin
	wait_for 60 mariadb --no-defaults --socket="$d/mysqld.sock" -uroot -e 'SELECT 1' ||
		die "mariadbd did not come up; see $LOGS/mariadbd.log"
	mariadb --no-defaults --socket="$d/mysqld.sock" -uroot <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'widthlab';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'widthlab';
GRANT ALL ON \`${CLUSTER}_acct_db\`.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON \`${CLUSTER}_acct_db\`.* TO 'slurm'@'localhost';
EOF
	log "mariadbd up (pid $(pid_of mariadbd), 127.0.0.1:$DB_PORT)"
}

start_slurmdbd() {
	alive slurmdbd && return 0
	spawn slurmdbd "$LOGS/slurmdbd.out" env SLURM_CONF="$CONF" slurmdbd -D
	wait_for 60 sacctmgr -n list cluster ||
		die "slurmdbd did not answer; see $LOGS/slurmdbd.log"
	if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
		sacctmgr -i add cluster "$CLUSTER" >/dev/null
	fi
	log "slurmdbd up (pid $(pid_of slurmdbd))"
}

start_slurmctld() {
	alive slurmctld && return 0
	spawn slurmctld "$LOGS/slurmctld.out" slurmctld -D -f "$CONF"
	wait_for 30 scontrol ping ||
		die "slurmctld did not answer; see $LOGS/slurmctld.log"
	log "slurmctld up (pid $(pid_of slurmctld))"
}

start_slurmd() {
	alive slurmd && return 0
	spawn slurmd "$LOGS/slurmd.out" slurmd -D -f "$CONF"
	local host
	host=$(hostname -s)
	if ! wait_for 60 bash -c "sinfo -h -n '$host' -o %t | grep -Eqx 'idle|mix|alloc'"; then
		sinfo -N -l >&2 || true
		die "node $host did not become idle; see $LOGS/slurmd.log and $LOGS/slurmctld.log"
	fi
	log "slurmd up (pid $(pid_of slurmd)); node $host $(sinfo -h -n "$host" -o %t)"
}

ETC_LINK=/etc/slurm/slurm.conf

ours_link() { # true when /etc/slurm/slurm.conf is a link made by this script (any DIR)
	[[ -L $ETC_LINK ]] || return 1
	local target
	target=$(readlink "$ETC_LINK")
	[[ $target == "$CONF" ]] && return 0
	if [[ -e $target ]]; then
		grep -q '^# written by tests/slurm/cluster.sh' "$target"
	else
		[[ $target == */etc/slurm.conf ]] # dangling: left by a cluster whose dir was removed
	fi
}

check_etc() {
	if [[ -e $ETC_LINK || -L $ETC_LINK ]] && ! ours_link; then
		die "$ETC_LINK exists and was not written by this script (a real SLURM install?). The \
test cluster needs that path (the jobstep plugin drops SLURM_CONF before srun); use a machine \
without a SLURM configuration, or move it aside."
	fi
}

link_etc() {
	mkdir -p /etc/slurm
	ln -sfn "$CONF" "$ETC_LINK"
}

unlink_etc() {
	if [[ -L $ETC_LINK && $(readlink "$ETC_LINK") == "$CONF" ]]; then
		rm -f "$ETC_LINK"
	fi
}

config_changed() { # true when this script would now write another configuration
	local tmp rc=1
	tmp=$(mktemp -d)
	write_config "$tmp"
	diff -q -r "$tmp" "$ETC" >/dev/null 2>&1 || rc=0
	rm -rf "$tmp"
	return $rc
}

all_alive() {
	local d
	for d in "${DAEMONS[@]}"; do alive "$d" || return 1; done
}

any_alive() {
	local d
	for d in "${DAEMONS[@]}"; do alive "$d" && return 0; done
	return 1
}

cmd_start() {
	check_platform
	mkdir -p "$DIR"
	chmod 755 "$DIR"
	export SLURM_CONF="$CONF"
	check_etc
	if all_alive && ! config_changed; then
		link_etc
		log "already running (${DIR})"
	else
		if all_alive; then
			log "configuration changed (this script was edited): restarting"
			cmd_stop
		fi
		if any_alive; then
			log "some daemons are down: restarting all"
			cmd_stop
		fi
		install_packages
		write_config
		link_etc
		start_munged
		start_mariadb
		start_slurmdbd
		start_slurmctld
		start_slurmd
		log "cluster up: $(sinfo -h -o '%P %D %t %G' | tr '\n' ' ')"
	fi
	echo "export SLURM_CONF=$CONF"
}

stop_pid() { # name
	local name=$1 pid i
	pid=$(pid_of "$name")
	if alive "$name"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			running "$pid" || break
			sleep 0.1
		done
		if running "$pid"; then
			log "$name ($pid) ignored SIGTERM for 10 s: SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	[[ -f $PIDS ]] && sed -i "/^$name /d" "$PIDS"
	return 0
}

cmd_stop() {
	[[ $(id -u) -eq 0 ]] || die "must run as root"
	export SLURM_CONF="$CONF"
	if alive slurmctld; then
		# Cancel jobs first so that no slurmstepd or job process outlives the cluster.
		local jobs i
		jobs=$(squeue -h -o %i 2>/dev/null || true)
		if [[ -n $jobs ]]; then
			log "cancelling jobs: $(echo "$jobs" | tr '\n' ' ')"
			# shellcheck disable=SC2086
			scancel $jobs 2>/dev/null || true
			for ((i = 0; i < 150; i++)); do
				[[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
				sleep 0.2
			done
		fi
	fi
	local k
	for ((k = ${#DAEMONS[@]} - 1; k >= 0; k--)); do
		stop_pid "${DAEMONS[k]}"
	done
	# Anything still holding files under $DIR (a slurmstepd left by a killed slurmd) is ours.
	local p fd left=()
	for p in /proc/[0-9]*; do
		[[ ${p#/proc/} == "$$" ]] && continue
		running "${p#/proc/}" || continue
		for fd in "$p"/fd/*; do
			if [[ $(readlink "$fd" 2>/dev/null) == "$DIR"/* ]]; then
				left+=("${p#/proc/}")
				break
			fi
		done
	done
	if ((${#left[@]})); then
		log "killing leftover processes using $DIR: ${left[*]}"
		kill -KILL "${left[@]}" 2>/dev/null || true
	fi
	unlink_etc
	log "stopped"
}

cmd_status() {
	local d rc=0
	for d in "${DAEMONS[@]}"; do
		if alive "$d"; then
			echo "$d running (pid $(pid_of "$d"))"
		else
			echo "$d not running"
			rc=3
		fi
	done
	if alive slurmctld; then
		SLURM_CONF="$CONF" sinfo -N -o '%N %P %t %c %m %G' || rc=3
	fi
	return $rc
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) echo "export SLURM_CONF=$CONF" ;;
*)
	echo "usage: $0 start|stop|status|env   (WIDTHLAB_SLURM_DIR=${DIR})" >&2
	exit 2
	;;
esac
