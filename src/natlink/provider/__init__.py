"""What runs at a data provider before tokenising: reading and checking a source, standardising identifiers, onboarding with quarantine, profiling."""
