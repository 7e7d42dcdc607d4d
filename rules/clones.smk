# clones stage: filled in by its issue.
