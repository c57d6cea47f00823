"""Corral: microservice orchestration for Python."""
