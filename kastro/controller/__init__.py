"""What the controller keeps for itself: secrets directories (more with the architecture work)."""
