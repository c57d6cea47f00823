"""``ridehail``: a scripted tour (``demo``) and a city simulator (``sim``), both driving
the ridehail system only through its gateway, as its users would."""
