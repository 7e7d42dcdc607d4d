# units stage: filled in by its issue.
