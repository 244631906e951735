"""The `vitinspect` command: inspect (and --watch), render, and the result rows they write."""
