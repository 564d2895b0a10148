"""Developer and operator tools around the service: the embedded broker, the demo,
replay, watch, the tally and audit of the topics, process supervision and reports.
"""
