"""Datasets: raw loaders, class subsets, label noise, fixed orders, the probe set, and the NPZ.

:func:`~widthlab.data.splits.build_dataset` turns a :class:`~widthlab.grid.DataSpec` into a
:class:`~widthlab.data.dataset.Dataset`:

1. load the raw splits (:mod:`~widthlab.data.sources`: ``digits`` from scikit-learn
   (:mod:`~widthlab.data.digits`); ``fashion_mnist`` / ``mnist`` from the original IDX files
   (:mod:`~widthlab.data.idx`); ``cifar10`` / ``cifar100`` from the python pickle batches
   (:mod:`~widthlab.data.cifar`); ``synthetic`` from a seeded random teacher
   (:mod:`~widthlab.data.synthetic`)), all read by our own readers that validate what they read;
2. keep only ``spec.classes`` (relabelled 0..k-1 in the order given);
3. put the train split in a fixed, shuffled, *class-stratified* order (so the first n examples
   are balanced: ``Dataset.subsample`` takes a prefix), and the test split likewise, keeping
   its first ``test_size`` examples when a study cannot afford every analysis on all of them;
4. replace exactly ``round(label_noise * n_train)`` training labels by uniform random labels
   (extras ``noisy_mask`` and ``y_train_clean`` record which and what they were);
5. standardise every channel with the mean and standard deviation of the *training* split;
6. the probe set = the first ``probe_size`` test examples (same ones, same order, for every
   model of the dataset).

Steps 2–6 are :mod:`~widthlab.data.splits`. Everything is seeded by ``seed`` (one independent
random stream per step, :mod:`~widthlab.data.raw`) and nothing is ever downloaded: a missing or
corrupt raw file raises :class:`~widthlab.data.raw.DataError` naming the file, the format
expected and how to obtain it. The dataset rule writes the result as an NPZ
(:mod:`~widthlab.data.npz`: ``save_dataset`` / ``load_dataset`` / ``DatasetFiles``).
"""
