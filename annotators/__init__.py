"""annotators"""
