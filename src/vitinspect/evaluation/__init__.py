"""Figures a decision is made on: metrics, the class decision and operating point with intervals, the RT+SVM peer."""
