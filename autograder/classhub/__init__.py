"""The class hub: logins, per-learner users and limits, and nbgrader's exchange."""
