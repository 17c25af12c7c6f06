module mig-spawner.invalid/buildselftest

go 1.26
