package main

// reexecInit is replaced by the sandbox's libcontainer init hook.
func reexecInit() {}
