module github.com/eventbus-go/eventbus

go 1.22
