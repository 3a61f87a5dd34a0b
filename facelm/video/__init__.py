"""Video: tracking landmarks through frames (track), and how steady and accurate that is (stability)."""
