"""``make bench``: every performance target of the lane, measured side by side in one run."""
