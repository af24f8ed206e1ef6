"""History: publishing files into Kafka (replay), backtesting models over them with the live
code path (backtest), the backtest report, and the commands that run them."""
