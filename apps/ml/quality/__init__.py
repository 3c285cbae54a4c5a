"""The quality report: realism, diversity, near-copies, usefulness for a classifier, the filters
that generated images pass, and the guidance choice. No Django."""
