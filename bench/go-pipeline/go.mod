module weir.dev/bench/go-pipeline

go 1.22
