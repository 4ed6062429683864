// Two pages, built into dist/ and served by the stream service:
//   stream.html     at /index/{user_id}/{profile_id}
//   dashboard.html  at / and /dashboard
// Assets live under /assets/ (absolute paths: the stream page sits two folders deep).
// Paths are relative to this folder: run npm scripts from frontend/.
import { defineConfig } from "vitest/config";

export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    rollupOptions: {
      input: {
        stream: "stream.html",
        dashboard: "dashboard.html",
      },
    },
  },
  test: {
    include: ["tests/**/*.test.ts"],
    environment: "node",
  },
});
