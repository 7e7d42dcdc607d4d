"""Across papers, on the same models: questions none of the five papers asked.

Prunable units vs clones (Casper × Doimo), per model, last hidden layer
    Casper et al. call a network's units prunable when zeroing a random subset leaves its
    predictions unchanged; Doimo et al. call a layer redundant when a random chunk of its units
    reconstructs the whole layer (ridge R² → 1: the chunk holds a copy of every "clone").
    If the two describe one phenomenon, then among kept subsets of the *same size* the ones that
    reconstruct the full layer better must also keep the predictions better. For each kept
    fraction (default 1/8, 1/4, 1/2, 3/4) random kept sets of the last hidden layer are drawn
    (:mod:`.measure`); each is scored for agreement with the intact model when every other unit
    is zeroed and for the ridge R² kept → full. The statistic is Spearman's ρ *within* a fraction
    (both fall as fewer units are kept, so pooling fractions would correlate them trivially);
    a model's ρ is the mean over fractions, a seed's the mean over its models.

Layers: blocks, PC1 and prunability (Nguyen × Casper)
    Blocks sit in the late layers of wide nets, and late layers differ from early ones whether or
    not they form a block. So each layer is compared with the layers at the *same position*
    (same depth, same layer index) of the other models: a quantity is centred on its position's
    mean over all models, and a model's contrast is the mean centred value of its block layers
    minus that of its other layers (:func:`.summary.layer_contrasts`).

Models: transfer and clones (Gilboa × Doimo)
    Width drives both the transfer accuracy and the number of clones, so a correlation over
    widths says nothing about the two. The statistic is Spearman's ρ *within* an architecture
    (same width, depth, variant; the models differ only in their seed), pooled over
    architectures, with a seed-level bootstrap interval.

Package layout: :mod:`.measure` (torch, per model), :mod:`.summary` (tables, torch-free),
:mod:`.claims` (headline rows through the one rule), :mod:`.figures`.
"""
