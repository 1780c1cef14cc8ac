"""The hot path: a tracking request becomes a hit, classified and stored before it is answered."""
