"""`make report` and `make peer`: the workspace judged against a base revision, for a pull request."""
