export * from "./definition";
export * from "./store";
export * from "./engine";
