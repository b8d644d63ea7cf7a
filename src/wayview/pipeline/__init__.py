"""wayview.pipeline: processing stages (derivatives now; positions, blurring, detections later)."""
