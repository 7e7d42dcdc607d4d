# transfer stage: filled in by its issue.
