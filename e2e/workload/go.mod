module homeostat.dev/e2e/workload

go 1.24
