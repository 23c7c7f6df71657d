"""``make bench``: every target of DESIGN.md section 9, measured side by side in one run."""
