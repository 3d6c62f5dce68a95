"""CPU profiles (pyinstrument) and memory profiles (memray), sampled for production, as OTel spans."""
