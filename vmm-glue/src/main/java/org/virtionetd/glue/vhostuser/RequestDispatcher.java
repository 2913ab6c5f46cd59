package org.virtionetd.glue.vhostuser;

import org.virtionetd.virtio.device.VirtioDevice;
import org.virtionetd.virtio.device.VirtioException;
import org.virtionetd.virtio.os.EventFd;

import java.io.IOException;

/**
 * Hands each front-end request of one connection to the part that owns it, in the order of vhost-user.rst's
 * "Front-end message types"; requests that only the device answers are handled here.
 */
final class RequestDispatcher {
    /** The transport logs under one name, so that one level setting covers all of it. */
    private static final System.Logger LOG = System.getLogger(VhostUserServer.class.getName());

    private final Session s;
    private final VirtioDevice device;

    RequestDispatcher(Session session, VirtioDevice device) {
        this.s = session;
        this.device = device;
    }

    /** Handles a validated request whose payload we implement; a reply, if the request has one, is sent. */
    void dispatch(VhostUserRequest request, VhostUserMessage m) throws VhostUserException, IOException {
        int id = request.id();
        VringTable vrings = s.vrings();
        switch (request) {
            case GET_FEATURES -> s.send(m.replyU64(id, s.backendFeatures()));
            case SET_FEATURES -> s.setFeatures(m.u64());
            case GET_PROTOCOL_FEATURES -> s.send(m.replyU64(id, s.offeredProtocolFeatures()));
            case SET_PROTOCOL_FEATURES -> s.setProtocolFeatures(m.u64());
            case SET_OWNER -> s.setOwner();
            case RESET_OWNER -> vrings.disableAll();
            case SET_MEM_TABLE -> s.setMemTable(m);
            // Always has a reply when LOG_SHMFD is negotiated (vhost-user.rst, "Communication").
            case SET_LOG_BASE -> s.send(m.replyU64(id, s.setLogBase(m)));
            case SET_LOG_FD -> s.setLogFd(EventFd.adopt(m.takeFd(0)));
            case SET_VRING_NUM -> vrings.setNum(m.stateIndex(), m.stateNum());
            case SET_VRING_ADDR -> vrings.setAddress(m);
            case SET_VRING_BASE -> vrings.setBase(m.stateIndex(), m.stateNum());
            case GET_VRING_BASE -> s.send(m.replyState(id, m.stateIndex(), vrings.stopAndGetBase(m.stateIndex())));
            case SET_VRING_KICK -> vrings.setKick(m);
            case SET_VRING_CALL -> vrings.setCall(m);
            case SET_VRING_ERR -> vrings.setErr(m);
            case GET_QUEUE_NUM -> s.send(m.replyU64(id, queuePairs()));
            case SET_VRING_ENABLE -> vrings.setEnable(m.stateIndex(), m.stateNum());
            case SEND_RARP -> sendRarp(m);
            case NET_SET_MTU -> setMtu(m.u64());
            case GET_CONFIG -> getConfig(m);
            case SET_CONFIG -> setConfig(m);
            case RESET_DEVICE -> s.resetDevice();
            case GET_MAX_MEM_SLOTS -> s.send(m.replyU64(id, VhostUserServer.MAX_MEM_SLOTS));
            case ADD_MEM_REG -> s.addMemoryRegion(m);
            case REM_MEM_REG -> s.removeMemoryRegion(m);
            case SET_STATUS -> s.setStatus(m.u64());
            case GET_STATUS -> s.send(m.replyU64(id, device.status() & 0xffL));
            default -> throw new VhostUserException(VhostUserException.Kind.UNSUPPORTED,
                    VhostUserRequest.describe(id) + " is not supported");
        }
    }

    private long queuePairs() {
        // vhost-user-net counts queue pairs (QEMU compares it with queues=N); other devices count queues.
        return device.deviceType() == 1 ? Math.max(1, device.queueCount() / 2) : device.queueCount();
    }

    private void sendRarp(VhostUserMessage m) {
        byte[] mac = new byte[6];
        m.buffer().get(VhostUserMessage.HEADER_SIZE, mac);
        device.sendRarp(mac);
    }

    private void setMtu(long mtu) throws VhostUserException {
        if (mtu < 0 || mtu > 0xffff) {
            throw VhostUserException.refused("MTU " + Long.toUnsignedString(mtu) + " is not a 16-bit value");
        }
        try {
            device.setMtu((int) mtu);
        } catch (VirtioException e) {
            throw VhostUserException.refused("MTU " + mtu + ": " + e.getMessage(), e);
        }
    }

    private void getConfig(VhostUserMessage m) throws IOException {
        int offset = m.configOffset();
        int flags = m.configFlags();
        int size = m.configSize();
        try {
            byte[] data = device.readConfig(offset, size);
            s.send(m.replyConfig(VhostUserRequest.GET_CONFIG.id(), offset, flags, data));
        } catch (VirtioException e) {
            // "vhost-user back-end uses zero length of payload to indicate an error".
            LOG.log(System.Logger.Level.WARNING, "GET_CONFIG offset " + offset + " size " + size
                    + " refused: " + e.getMessage());
            s.send(m.reply(VhostUserRequest.GET_CONFIG.id(), 0));
        }
    }

    private void setConfig(VhostUserMessage m) throws VhostUserException {
        try {
            device.writeConfig(m.configOffset(), m.configPayload());
        } catch (VirtioException e) {
            throw VhostUserException.refused("SET_CONFIG offset " + m.configOffset() + " size "
                    + m.configSize() + " flags " + m.configFlags() + ": " + e.getMessage(), e);
        }
    }
}
