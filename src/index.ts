import { run } from './main'

// No top-level await: ncc must emit CommonJS (ssh2 needs __dirname).
void run()
