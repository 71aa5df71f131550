"""NIS2 (law 5160/2024): incidents, their deadlines and report drafts, from the telemetry."""
