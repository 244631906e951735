"""NSOARTC: the RT composite of a part's views against a unit space of good parts, and the lot composed with it."""
