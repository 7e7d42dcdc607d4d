# similarity stage: filled in by its issue.
