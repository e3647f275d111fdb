/** Request parameters the HTTP routes share. */
import type { Context } from "hono";
import { InvalidProjectIdError, assertProjectId, type ProjectId } from "../functions/project-id.js";

/** The route's `:projectId`, validated; a 400 response naming what was wrong otherwise. */
export function projectIdParam(c: Context): ProjectId | Response {
  try {
    return assertProjectId(c.req.param("projectId"));
  } catch (err) {
    if (err instanceof InvalidProjectIdError) return c.json({ error: err.message }, 400);
    throw err;
  }
}
