"""The Hydra configs of forecast-train, forecast-predict and forecast-sweep (a package, so that
Hydra finds them in an installed copy as `pkg://forecast.conf`)."""
