"""One cluster's daemon: consumes account events, provisions namespaces, reports back."""
