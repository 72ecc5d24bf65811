"""As-of indicators: feature specs, cohorts, labels, and the engines that compute them."""
