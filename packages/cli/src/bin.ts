#!/usr/bin/env node
// The `cyredis` executable: runs the command line and exits with its code.
import { main } from './program.js';

// Exit even if some library left a timer behind: the command is over (stdout to a pipe or file is written synchronously on Linux and macOS).
process.exit(await main(process.argv.slice(2)));
