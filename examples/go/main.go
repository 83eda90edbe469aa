// Command hello greets whoever is named on its command line.
package main

import (
	"fmt"
	"os"
	"strings"
)

func greeting(names []string) string {
	if len(names) == 0 {
		return "hello, world"
	}
	return "hello, " + strings.Join(names, " and ")
}

func main() {
	fmt.Println(greeting(os.Args[1:]))
}
