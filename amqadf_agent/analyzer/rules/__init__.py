"""Rules: each turns the records of a read into ``Recommendation``s with their evidence.

``database`` (statements, N+1, slow queries, …) is the first; autoscaling, cache and thread rules follow.
"""
