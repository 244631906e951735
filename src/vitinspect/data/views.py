"""The cameras a part is seen from, and which of them face each other (the Double-Eye pairs).

Shared by the params schema (which view sets are valid) and the NSOARTC arithmetic (which views it
combines), so neither imports the other.
"""

VIEWS = ("center", "left", "right", "top", "bottom")
# Opposite camera pairs used by the Double-Eye composition (see nsoartc.py).
VIEW_PAIRS = (("left", "right"), ("top", "bottom"))
