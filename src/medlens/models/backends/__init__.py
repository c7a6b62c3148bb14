"""models/backends"""
