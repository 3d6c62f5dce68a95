"""Scaling: an in-process load balancer and an autoscaler decision engine."""
