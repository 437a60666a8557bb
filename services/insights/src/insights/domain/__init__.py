"""The pure rules of the insights service: dimensions, the projection of a need's facts into
counts, the figures and their definitions, cohort figures, and small-number suppression.
No I/O and no clock reads: values in, values out."""
