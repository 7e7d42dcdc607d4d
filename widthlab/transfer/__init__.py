"""Transfer, hidden-state information and activation atlases (Gilboa & Gur-Ari 2019, "Wider
Networks Learn Better Features").

Source and target
    A model of the analysed grid was trained on a *source* dataset variant (by default the
    digits 0–4, ``digits-c01234``). The *target* task is the same dataset (or
    ``target_dataset``, e.g. CIFAR-100 for CIFAR-10 models) restricted to ``target_classes``
    (default 5–9, ``digits-c56789``, relabelled 0..k-1), built by the dataset rule from its id
    (:func:`target_data_id`). Each dataset is standardised with its own training statistics,
    so target images are first mapped back to raw pixel values and re-standardised with the
    *source* statistics (:func:`in_source_space`): the frozen backbone sees them exactly as it
    saw its own inputs.

Backbones
    ``trained``: the model as trained. ``random``: the same architecture at the exact
    initialisation the training run started from (:func:`initial_model`: ``torch.manual_seed(
    spec.seed)`` then :func:`widthlab.models.build_model`, what
    :func:`widthlab.training.train.train` does before its first step). Random ReLU features also
    improve with width, so the claim is about the trained − random gap.

Last-layer fine-tuning (``analysis = finetune``)
    The backbone is frozen; its last hidden representation (the input of ``head``) is the
    feature vector. A new last linear layer is a multinomial scikit-learn ``LogisticRegression``
    (lbfgs, L2 with ``C``, a fixed budget of ``max_iter`` iterations, convergence warnings
    silenced) on features centred with its own training examples' unit means and divided by
    one number per layer, their root mean unit variance (:func:`standardise`; a per-unit
    z-score would blow up units that are nearly dead on a few-shot training set). It is
    fitted on ``shots`` examples per target class drawn from the target training split
    (``"all"``: the whole split) and scored on the whole target test split. Few-shot draws are
    seeded by ``(seed, shots, draw)`` only, so every model and both backbones see the same
    examples; a shot count that covers every class's training
    examples is the ``all`` case and is fitted once. Measures: ``target_acc`` (test) and
    ``target_train_acc`` per draw; ``source_acc`` (``analysis = source``): the model's own test
    accuracy on the source test split (chance for the random backbone).

Information in the hidden state (``analysis = information``), every tap, both backbones
    ``recon_r2`` / ``recon_mse``: ridge reconstruction of the input pixels from the layer,
    fitted on a training split and scored on the matching test split, for the source images
    and the target images (column ``images``). Ridge with intercept on the layer scaled as for
    fine-tuning; α (``recon_alpha``) is chosen from ``ridge_alphas`` by the exact leave-one-out
    error on the training split (the hat-matrix identity of scikit-learn's ``RidgeCV``); R² is the
    variance-weighted R² (1 − Σ SSE / Σ SST over pixels), MSE the mean squared error per pixel
    in standardised units. ``knn_acc``: k-nearest-neighbour (Euclidean, raw layer values)
    read-out of the target labels, the classes the model was never trained on; ``linear_acc``:
    the logistic-regression read-out of the same (as fine-tuning with all shots, which it equals
    for the last layer). At most ``max_examples`` examples of each split are used (the first
    ones, which are class-balanced by construction of the splits). Conv maps are average-pooled
    to at most ``max_conv_positions`` positions and flattened.

Activation atlas (:func:`atlas_table`)
    For one layer (``atlas.layer``, ``last`` = the last hidden layer), the activations of the
    target test split (``atlas.images: target``, the default: the unseen classes, through the
    model) or of the source probe examples (``source``, read from the activation stage's
    layers.npz) are embedded in 2-D (t-SNE of scikit-learn, PCA-initialised and seeded; UMAP
    when ``embedding`` is ``umap``, or ``auto`` and ``umap`` is importable). The embedding's
    bounding box is cut into ``grid × grid`` cells; every example falls in exactly one cell
    (points on the upper edge go to the last cell). Each non-empty cell holds its count, its
    majority class, its purity (share of the majority class) and the mean input image of its
    examples; optionally (``feature_visualisation``) an input optimised so that the layer's
    activation matches the cell's mean activation. With ``random_control`` (default) the same
    atlas is made of the untrained twin on the same images (column ``backbone``).

Summary and headline
    Per model the draws are averaged; slopes are per width doubling (OLS on log2 width) fitted
    per seed (and depth) and summarised by a t-interval over those fits. The matched comparison
    fits target accuracy (and the last layer's reconstruction R² and kNN accuracy) on log2
    width *and* source test accuracy over all trained models (OLS, 95 % interval from its
    standard error), i.e. the width effect at equal source accuracy; with too few models, or
    source accuracies that do not vary, it falls back to the plain slope without an interval.
    A claim ``holds`` by :func:`verdict`.

Modules (the house shape; this file imports nothing):

- :mod:`.settings` — ``TransferConfig`` (the per-model job), ``AtlasConfig`` and the stage's
  vocabulary (torch-free).
- :mod:`.measure` — backbones, last-layer fine-tuning and the information read-outs of one
  model (torch, imported when called); :mod:`.atlas` — activation atlases.
- :mod:`.summary` — tables across models (torch-free).
- :mod:`.claims` — the headline rows, every verdict through :func:`widthlab.headline.claim`.
- :mod:`.jobs` — what ``rules/transfer.smk`` needs while building the DAG (torch-free).
- :mod:`.figures` — tables → figures (torch-free).

``docs/stages/transfer.md`` states the claims and their rules.
"""
