mod cli;
mod concurrency;
