"""The simulated-oracle client and experiment runner: answers boxal's queries from ground truth over
HTTP only, so one service both serves people and reproduces the paper's curves."""
