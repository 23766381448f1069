"""Wire types, API versions and filters: imported by everyone, imports nothing from pymoby."""
