// An ApprovalService that tells listeners about each request it creates — how the control plane learns of
// new requests to announce (the webhook) without touching src/approvals. The gateway constructs this class
// instead of ApprovalService; everything else is inherited unchanged.
//
// Why not the store's NOTIFY channel: every replica hears every notification, so with N replicas each new
// request would be announced N times. The replica whose gateway created the request is the one that tells.
import type { ApprovalServiceOptions } from "../approvals/service.js";
import { ApprovalService } from "../approvals/service.js";
import type { ApprovalRequest, NewApprovalRequest } from "../approvals/types.js";
import { type Logger, silentLogger } from "../util/log.js";

export type CreatedListener = (request: ApprovalRequest) => void;

export class ObservableApprovalService extends ApprovalService {
  private readonly createdListeners = new Set<CreatedListener>();
  private readonly listenerLog: Logger;

  constructor(options: ApprovalServiceOptions) {
    super(options);
    this.listenerLog = options.log ?? silentLogger;
  }

  /**
   * Calls `listener` after each request this instance creates, once it is committed. Listeners run
   * synchronously on the command path, so they must only start work (a listener that throws is logged and
   * ignored). Returns the unsubscribe call.
   */
  onCreated(listener: CreatedListener): () => void {
    this.createdListeners.add(listener);
    return () => {
      this.createdListeners.delete(listener);
    };
  }

  override async create(input: NewApprovalRequest): Promise<ApprovalRequest> {
    const request = await super.create(input);
    for (const listener of this.createdListeners) {
      try {
        listener(request);
      } catch (err) {
        this.listenerLog.error(
          { approval_id: request.id, err: (err as Error).message },
          "approvals: a listener for new requests failed",
        );
      }
    }
    return request;
  }
}

/** Whether `service` can report its new requests (an ObservableApprovalService or anything shaped like it). */
export function isObservable(
  service: ApprovalService,
): service is ApprovalService & Pick<ObservableApprovalService, "onCreated"> {
  return typeof (service as Partial<ObservableApprovalService>).onCreated === "function";
}
