"""The simulated oracle and experiment runner: answers boxal's queries from ground truth over HTTP only,
through the client library (boxal.client), so one service both serves people and reproduces the paper's
curves."""
