"""A small-scale stability-gap reproduction on a CPU, through the real stages (docs/small-scale-reproduction.md)."""
