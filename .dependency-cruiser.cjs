/**
 * Architecture rules, checked by `npm test` (test/architecture.test.ts runs them through the
 * dependency-cruiser API; a broken rule fails the suite) and by `npm run depcruise`.
 * Dependencies point one way: runtime/ -> adapters (docker/, sql/, storage/) -> functions/ ports.
 */
const ADAPTERS = "^(docker|sql|storage|diagnosis)/";
/** What an adapter may use of functions/: the ports it implements and their vocabulary. */
const PORTS = "^functions/(ports|errors|lifecycle|project-id)\\.ts$";

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment: "No import cycles anywhere.",
      from: {},
      to: { circular: true },
    },
    {
      name: "functions-depend-on-ports-only",
      severity: "error",
      comment: "functions/ knows the outside world only through functions/ports.ts: no adapter, no runtime.",
      from: { path: "^functions/" },
      to: { path: "^(docker|sql|storage|diagnosis|runtime|bench|test)/" },
    },
    {
      name: "functions-use-no-infrastructure-library",
      severity: "error",
      comment: "Docker, SQL, HTTP and storage libraries belong to the adapters and the host.",
      from: { path: "^functions/" },
      to: { dependencyTypes: ["npm"], pathNot: "node_modules/(inngest|valibot)/" },
    },
    {
      name: "adapters-never-import-runtime",
      severity: "error",
      comment: "Adapters own their settings types; runtime/ maps the environment onto them.",
      from: { path: ADAPTERS },
      to: { path: "^(runtime|bench|test)/|^inngest\\.config\\.ts$" },
    },
    {
      name: "adapters-use-only-the-ports-of-functions",
      severity: "error",
      comment: "An adapter implements ports; it does not reach into the workflow.",
      from: { path: ADAPTERS },
      to: { path: "^functions/", pathNot: PORTS },
    },
    {
      name: "adapters-do-not-import-each-other",
      severity: "error",
      comment: "docker/, sql/, storage/ and diagnosis/ meet only in runtime/ (the composition root).",
      from: { path: "^(docker|sql|storage|diagnosis)/" },
      to: { path: "^(docker|sql|storage|diagnosis)/", pathNot: "^$1/" },
    },
    {
      name: "adapters-throw-their-own-errors",
      severity: "error",
      comment: "PermanentError is mapped to NonRetriableError once, in functions/; adapters never import the Inngest SDK.",
      from: { path: ADAPTERS },
      to: { path: "node_modules/(inngest|@inngest)/" },
    },
    {
      name: "event-contract-is-only-the-contract",
      severity: "error",
      comment: "inngest.config.ts holds the app id and event schemas; the client is built in runtime/.",
      from: { path: "^inngest\\.config\\.ts$" },
      to: { path: "^(runtime|docker|sql|storage|diagnosis)/" },
    },
    {
      name: "production-code-never-imports-tests",
      severity: "error",
      from: { path: "^(functions|docker|sql|storage|diagnosis|runtime)/|^inngest\\.config\\.ts$" },
      to: { path: "^(test|bench)/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default", "types"],
    },
  },
};
