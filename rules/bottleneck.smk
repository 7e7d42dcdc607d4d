# bottleneck stage: filled in by its issue.
